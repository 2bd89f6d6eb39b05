"""Making NSynth-format corpora: synthetic tones, SoundFont renders, the demo corpus, and the writers of the three layouts."""
