-- The device message ("<SessionID>/<MsgID>") whose answer carried the command: when the
-- device sends that message again, the answer never reached it, and the command is sent
-- again.
ALTER TABLE win_commands ADD COLUMN delivered_in TEXT;
