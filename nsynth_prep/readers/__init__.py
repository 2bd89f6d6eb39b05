"""Sources to labels and audio: NSynth's JSON+WAV folders, .jsonwav.tar.gz archives and TFRecord files, read exactly and fingerprinted."""
