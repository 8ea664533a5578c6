"""ConceptDistill: importing this package registers every component."""
