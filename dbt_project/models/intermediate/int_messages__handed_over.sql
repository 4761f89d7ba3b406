{{ config(materialized='ephemeral') }}
-- Occurrences the send_once syncs handed to a destination, one row per occurrence key: `sent` when a sync's
-- destination acknowledged it (in the ledger, or among the acknowledgements a run has not folded into it yet),
-- else `pending` (written ahead by a run that may have delivered it before it died; the next run re-sends it
-- under the same idempotency key). handed_over_at is the acknowledgement's instant, or, while pending, the start
-- of the run that wrote it ahead. Ephemeral like the ledger it reads, so every build of the models reading it
-- sees the ledger as it is then. The SQL is the macro tidings_handed_over, which a model looking up only some
-- keys calls with them (message_decisions).
{{ tidings_handed_over() }}
