"""Offline data tools: synthetic demo set, A/B combining, TFRecord building."""
