"""The pipeline's state machine definition and its renderer."""
