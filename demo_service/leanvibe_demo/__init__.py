"""LeanVibe demo service: the HTTP application deployed in blue/green slots behind nginx."""
