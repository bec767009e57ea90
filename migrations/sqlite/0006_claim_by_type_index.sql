-- Built-in executors claim by operation type across every project; without this index
-- each of their claims scans the whole queue of waiting operations.
CREATE INDEX operations_claimable_by_type ON operations (operation_type, queue_rank DESC, queue_order, id)
    WHERE lease_token IS NULL AND status IN ('Initiated', 'Running');
