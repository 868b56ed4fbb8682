"""The clause mixins; ``SyncModelConformance`` (in ``conformance.standard``) combines them all."""
