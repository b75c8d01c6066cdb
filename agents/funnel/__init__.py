"""The serving funnel as pure stages: retrieval, filtering, scoring, ordering."""
