"""The pipeline's state machine: pipeline.asl.json and its renderer/validator (deployed by every target)."""
