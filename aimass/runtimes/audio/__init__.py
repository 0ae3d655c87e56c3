"""Speech to text with faster-whisper (Whisper on CTranslate2), Silero VAD included."""
