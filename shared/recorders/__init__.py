"""The stores' process recorders, able to write several tracking records in one transaction.

A consumer that fetched a batch of upstream events records the effects of several of them at
once (:meth:`shared.application.ServiceApplication.record_batch`): their events and one
tracking record per upstream event, all in one transaction, so the batch is exactly-once as a
whole (all of it or none of it). The extra tracking records travel as ``more_tracking``.

One module per store (``shared.recorders.sqlite``, ``shared.recorders.postgres``), so a service
on SQLite never imports psycopg (about 20 MB of a process).
"""
