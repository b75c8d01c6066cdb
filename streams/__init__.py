"""streamrec's edge with Kafka: settings, topics, records, codecs, app factory, client and CLI."""
