"""The policy: the operational definitions as versioned data (model, TOML text, the shipped
default).
"""
