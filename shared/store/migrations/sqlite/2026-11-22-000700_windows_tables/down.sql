DROP TABLE win_commands;
DROP TABLE win_certificates;
DROP TABLE win_enrollments;
