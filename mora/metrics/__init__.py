"""mora.metrics"""
