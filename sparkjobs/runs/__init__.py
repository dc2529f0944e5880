"""Runs as people act on them: submitting, ad-hoc work, following, cancelling, rerunning."""
