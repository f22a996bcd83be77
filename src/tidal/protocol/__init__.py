"""Pure codecs between wire formats and the core types."""
