"""What streamrec keeps: user and item state, the Redis online store, the ANN index, the model registry."""
