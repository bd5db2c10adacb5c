"""One deal's fold: its events, under a policy, into its value stream; touch rules, stages, waits,
stalls, alerts.
"""
