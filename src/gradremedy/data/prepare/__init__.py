"""Turn corpus distributions (CHiME-4, RATS, LibriSpeech, Common Voice) into Kaldi/ESPnet data directories."""
