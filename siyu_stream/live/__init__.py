"""The live worker: the aiokafka loop, the partition processor, state stores, the changelog,
standbys and group membership."""
