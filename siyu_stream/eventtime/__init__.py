"""Event time: one partition's clock and timers, its inputs merged by time, the partitioner.

Shared by replay and the live worker, so that both take records in the same order and
fire timers at the same instants.
"""
