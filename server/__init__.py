"""The streaming service: WebRTC sessions that turn live speech into a talking avatar video."""
