"""Turn licensed corpus distributions (CHiME-4, RATS) into Kaldi/ESPnet data directories."""
