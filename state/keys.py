"""The Redis key schema of the online store (version 1); every key starts with ``{prefix}:v1:``.

==========================  ======  =======================================================  ==========
key                         type    value                                                    TTL
==========================  ======  =======================================================  ==========
``u:{user}``                string  ``state_codec`` bytes of the user's ``UserState``         user_ttl_s
``uv:{user}``               string  session embedding, ``vectors`` bytes (float16)            user_ttl_s
``i:{item}``                string  catalog fields, ``items.encode_item`` JSON array          none
``ic:{type}``               hash    item -> lifetime count of events of ``type``              none
``dp:{name}:{gen}``         zset    item -> forward-decayed score in generation ``gen``       2 periods
``pool:{name}``             zset    item -> score of a set-style pool (fresh, ...)            none
``cv:{gen}:{item}``         zset    other item -> decayed co-visitation weight, top K         2 periods
``off:{source}``            hash    partition -> highest Kafka offset applied                 none
``rec:{user}``              string  precomputed list, ``precomputed`` JSON (batch-score)      rec_ttl_s
==========================  ======  =======================================================  ==========

Decayed keys (``dp:popular:{gen}``, trending, co-visitation) follow ``state.popularity``: a
generation spans 64 half-lives, scores are relative to its start, and every increment is added to
the current and the next generation, so readers only ever read the generation of "now".

Bumping ``VERSION`` moves every key, so a new layout never reads an old one.
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION = 1


@dataclass(frozen=True, slots=True)
class KeySchema:
    """Builds the store's keys under one prefix."""

    prefix: str

    @property
    def root(self) -> str:
        return f"{self.prefix}:v{VERSION}:"

    def user(self, user_id: str) -> str:
        """The user's state.

        >>> KeySchema("sr").user("u1")
        'sr:v1:u:u1'
        """
        return f"{self.root}u:{user_id}"

    @property
    def user_prefix(self) -> str:
        """What every user-state key starts with (``scan_users`` lists the keys under it)."""
        return f"{self.root}u:"

    def user_vector(self, user_id: str) -> str:
        return f"{self.root}uv:{user_id}"

    def item(self, item_id: str) -> str:
        return f"{self.root}i:{item_id}"

    def item_counter(self, event_type: str) -> str:
        return f"{self.root}ic:{event_type}"

    def popularity(self, gen: int) -> str:
        return f"{self.root}pop:{gen}"

    def offsets(self, source: str) -> str:
        return f"{self.root}off:{source}"

    def decayed(self, name: str, gen: int) -> str:
        """A forward-decayed pool's generation ``gen`` (``popular``, ``trending``...)."""
        return f"{self.root}dp:{name}:{gen}"

    def pool(self, name: str) -> str:
        return f"{self.root}pool:{name}"

    def covisit(self, gen: int, item_id: str) -> str:
        return f"{self.root}cv:{gen}:{item_id}"

    def precomputed(self, user_id: str) -> str:
        """The user's precomputed list (written by ``streamrec batch-score --out redis``).

        >>> KeySchema("sr").precomputed("u1")
        'sr:v1:rec:u1'
        """
        return f"{self.root}rec:{user_id}"

    def pattern(self) -> str:
        """Glob matching every key of this schema (for tests and cleanup)."""
        return f"{self.root}*"
