// For unit tests: the head of a valid two-site topology (metadata, sites, witness) on loopback
// addresses; tests append the sections they are about (groups, failover, security, ...).
export const demoTopologyHead = `apiVersion: metrocluster/v1
kind: MetroCluster
metadata: { name: demo }
sites:
  - { name: alpha, fireZone: a, agent: { address: 127.0.1.1, port: 7401 }, portal: { address: 127.0.1.1, port: 3260 }, dataDir: ./data/alpha }
  - { name: beta, fireZone: b, agent: { address: 127.0.2.1, port: 7402 }, portal: { address: 127.0.2.1, port: 3260 }, dataDir: ./data/beta }
witness: { fireZone: c, address: 127.0.3.1, port: 7400, dataDir: ./data/witness }
`;
