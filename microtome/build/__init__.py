"""microtome.build"""
