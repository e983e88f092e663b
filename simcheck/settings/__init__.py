"""Settings, without torch: what a model is (`model.ModelSpec`), how to train it
(`train.TrainConfig`), how to read a model simcheck did not build (`adapter.ModelAdapter`),
attention modes by name (`attention`), lists of lengths (`lengths`), and the field
machinery they share (`fields`). The command line reads them while it parses its arguments,
before torch is imported."""
