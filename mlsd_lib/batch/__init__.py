"""Batch jobs on Dask: the offline half of the feature store and of inference.

Introduced in ``notebooks/scaling_out.ipynb``. Each job is the single-machine
pandas or torch function of its chapter, run unchanged on partitions that a
cluster spreads over worker processes, and equal to it (tests compare them):

* :mod:`~mlsd_lib.batch.dask_cluster`: the client every job takes, a private
  loopback ``LocalCluster`` or the scheduler at ``DASK_SCHEDULER_ADDRESS``.
* :mod:`~mlsd_lib.batch.entity_partitions`: rows hash-partitioned by entity,
  and the map-reduce shuffle that puts each partition on a worker.
* :mod:`~mlsd_lib.batch.partitioned_join`: the point-in-time join, partitioned
  by entity.
* :mod:`~mlsd_lib.batch.partitioned_windows`: the windowed-count feature view,
  replayed per entity partition.
* :mod:`~mlsd_lib.batch.catalogue_embedding`: a catalogue embedded by the
  exported model, loaded once per worker.
* :mod:`~mlsd_lib.batch.batch_measure`: pandas against Dask with 1 and 2
  workers, rows per second, peak memory per worker, and the crossover size;
  the memory sampled on the workers by :mod:`~mlsd_lib.batch.worker_memory`.

Nothing is imported here, so a worker that runs a join never imports torch.
"""
