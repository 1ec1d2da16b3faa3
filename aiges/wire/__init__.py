"""The wire format shared by the loader and the plugin: generated protobuf (:mod:`.pb`, from
``proto/`` by ``scripts/gen-proto``), the lane's frames (:mod:`.frames`) and the schema translation
an upstream Go loader accepts (:mod:`.schema`).  Pure: no I/O, no imports of either process."""
