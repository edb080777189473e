ALTER TABLE webhook_deliveries RESET (toast_tuple_target);
ALTER TABLE webhook_deliveries ALTER COLUMN payload SET COMPRESSION DEFAULT;
