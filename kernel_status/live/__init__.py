"""Live updates: waking waiters and change streams when a write commits.

Between the write side and the HTTP layer. The write side tells of every change inside its
transaction (:mod:`kernel_status.mirror.changes`: the change log and, on PostgreSQL,
``NOTIFY``); here, :mod:`~kernel_status.live.hub` fans the changes out to the waiters of one
server process in memory, :mod:`~kernel_status.live.listener` hears other processes' writes
(one PostgreSQL ``LISTEN`` connection per process, or the change counter elsewhere),
:mod:`~kernel_status.live.reads` runs the waits' database reads on a small shared pool of
threads, :mod:`~kernel_status.live.parking` holds blocking reads parked outside Django's
request (an ASGI middleware), :mod:`~kernel_status.live.request_thread` lets go of the thread
that Django keeps
for each ASGI request while it waits, and :mod:`~kernel_status.live.stream` is the change
stream's engine. The HTTP
endpoints that use them are in :mod:`kernel_status.api.watch`.
"""
