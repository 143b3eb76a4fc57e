-- The runbook's SQL, every ```sql block copied byte for byte (indentation included).
-- These queries are the spec: tests/integration/reference/test_runbook_sql.py runs each
-- one unchanged against the reference schema. A block starts at its "-- runbook:" line.

-- runbook: Stuck Device Remediation > Remediation Steps > 1. Identify Affected Devices
   -- Query devices with low OTPK pools
   SELECT d.device_id, d.user_id, d.device_name, kb.prekeys_remaining
   FROM e2ee_devices d
   JOIN e2ee_key_bundles kb ON d.device_id = kb.device_id
   WHERE kb.prekeys_remaining < 5
   AND d.status = 'active';

-- runbook: Abuse Burst Response > Immediate Actions > 1. Identify Abusive User
   -- Find users with high message rate
   SELECT sender_user_id, COUNT(*) as msg_count
   FROM dm_messages
   WHERE created_at > NOW() - INTERVAL '1 hour'
   GROUP BY sender_user_id
   ORDER BY msg_count DESC
   LIMIT 10;

-- runbook: Useful Commands > Database Queries
-- Find devices with low OTPK pools
SELECT d.device_id, u.username, kb.prekeys_remaining
FROM e2ee_devices d
JOIN users u ON d.user_id = u.account_id
JOIN e2ee_key_bundles kb ON d.device_id = kb.device_id
WHERE kb.prekeys_remaining < 5
AND d.status = 'active';

-- Find users with high message rates
SELECT sender_user_id, COUNT(*) as msg_count
FROM dm_messages
WHERE created_at > NOW() - INTERVAL '1 hour'
GROUP BY sender_user_id
ORDER BY msg_count DESC
LIMIT 10;

-- Check Redis lag (if stored in DB)
SELECT COUNT(*) as undelivered
FROM dm_messages m
LEFT JOIN dm_delivery d ON m.id = d.message_id
WHERE d.delivered_at IS NULL
AND m.created_at > NOW() - INTERVAL '5 minutes';
