"""The worker: consume, batch, settle; queue priority and the live-workers entry."""
