"""The Faust worker: the app, its agents and tables, batching, rebalance safety, sink, metrics,
webhook.
"""
