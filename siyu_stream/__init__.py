"""siyu-stream: customer-lifecycle rules for private-domain (私域) commerce, on Kafka."""

__version__ = "0.1.0"
