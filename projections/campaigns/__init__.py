"""Campaigns: journeys, attribution models, flow and results, from the event log as known at a
time.
"""
