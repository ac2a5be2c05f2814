ALTER TABLE win_commands DROP COLUMN delivered_in;
