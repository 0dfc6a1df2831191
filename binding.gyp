{
  "targets": [
    {
      "target_name": "egressgw_packet",
      "sources": ["native/packet/packet.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
