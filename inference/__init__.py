"""Everything that runs inside one Lambda worker: model, partitions, measurement, handlers."""
