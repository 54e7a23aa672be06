import CallRelayCommands

await callrelayMain()
