"""The Kafka edge: topic administration, the local brokers and reading topic history."""
