"""Apache Kafka from the outside: the local broker (or cluster) launcher, clients, background
processes.
"""
