"""Tests of the framework adapters against the real ESPnet, SpeechBrain, Lightning and torchjd."""
