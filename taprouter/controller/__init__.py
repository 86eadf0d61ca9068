"""The os-ken app, the pipeline schema, the planners and the reconciler."""
