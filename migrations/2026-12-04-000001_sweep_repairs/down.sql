DROP TABLE sweep_repairs;
