"""AWS on this machine without Docker: the engines a target runs on (moto in-process, the Lambda worker pool)."""
