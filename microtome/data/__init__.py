"""microtome.data"""
