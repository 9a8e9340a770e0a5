"""A Pusher executor that publishes each version atomically."""
