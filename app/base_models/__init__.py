"""Pretrained base models: Hugging Face model folders, unpacked from an upload or provided by the
operator, checked so that nothing is fetched, unpickled or executed."""
