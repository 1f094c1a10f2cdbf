"""Shard schema, atomic shard writer, reader and the streaming torch dataset."""
