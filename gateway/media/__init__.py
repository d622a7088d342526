"""The media side as call control sees it: rooms behind one interface (`interface`), in this process (`local`) or
in media worker processes over RabbitMQ (`remote`, served by `worker`)."""
