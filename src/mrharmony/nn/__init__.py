"""Network building blocks shared by the deep harmonizers."""
