/*
 * mock_cluster: hosts librdkafka's built-in mock Kafka cluster for the test harness
 * (tests/support/kafka.ts builds and starts it). It speaks the real Kafka protocol on loopback.
 *
 * Usage: mock_cluster [brokers]   (default 3 brokers, ids 1..brokers)
 *
 * The first stdout line is the bootstrap address list (host:port,host:port,...). Then it reads
 * one command per stdin line and answers each with one line, `ok` or `error <text>`:
 *
 *   topic <name> <partitions>   create a topic (replication factor 1)
 *   down <brokerId>             disconnect a broker and refuse new connections (-1: all)
 *   up <brokerId>               accept connections again (-1: all)
 *   quit                        destroy the cluster and exit 0
 *
 * End of input means quit, so the cluster never outlives the process that started it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static int parse_int(const char *text, long *out) {
  char *end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') return 0;
  *out = value;
  return 1;
}

static void reply_err(rd_kafka_resp_err_t err) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) printf("ok\n");
  else printf("error %s\n", rd_kafka_err2str(err));
}

int main(int argc, char **argv) {
  long brokers = 3;
  if (argc > 1 && (!parse_int(argv[1], &brokers) || brokers < 1 || brokers > 32)) {
    fprintf(stderr, "mock_cluster: broker count must be 1..32, got %s\n", argv[1]);
    return 2;
  }

  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* The handle is only the mock's bookkeeping: it never connects anywhere. */
  if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
    fprintf(stderr, "mock_cluster: %s\n", errstr);
    return 1;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) {
    fprintf(stderr, "mock_cluster: rd_kafka_new failed: %s\n", errstr);
    return 1;
  }
  rd_kafka_mock_cluster_t *mcluster = rd_kafka_mock_cluster_new(rk, (int)brokers);
  if (!mcluster) {
    fprintf(stderr, "mock_cluster: rd_kafka_mock_cluster_new failed\n");
    rd_kafka_destroy(rk);
    return 1;
  }
  printf("%s\n", rd_kafka_mock_cluster_bootstraps(mcluster));
  fflush(stdout);

  char line[4096];
  while (fgets(line, sizeof line, stdin)) {
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    char *saveptr = NULL;
    char *command = strtok_r(line, " \t", &saveptr);
    char *arg1 = command ? strtok_r(NULL, " \t", &saveptr) : NULL;
    char *arg2 = arg1 ? strtok_r(NULL, " \t", &saveptr) : NULL;
    char *extra = arg2 ? strtok_r(NULL, " \t", &saveptr) : NULL;
    long number = 0;

    if (!command) {
      printf("error empty command\n");
    } else if (strcmp(command, "quit") == 0) {
      printf("ok\n");
      fflush(stdout);
      break;
    } else if (strcmp(command, "topic") == 0) {
      if (!arg1 || !arg2 || extra || !parse_int(arg2, &number) || number < 1 || number > 100000)
        printf("error usage: topic <name> <partitions>\n");
      else
        reply_err(rd_kafka_mock_topic_create(mcluster, arg1, (int)number, 1));
    } else if (strcmp(command, "down") == 0 || strcmp(command, "up") == 0) {
      if (!arg1 || arg2 || !parse_int(arg1, &number) || number < -1 || number > brokers)
        printf("error usage: %s <brokerId 1..%ld, or -1 for all>\n", command, brokers);
      else if (strcmp(command, "down") == 0)
        reply_err(rd_kafka_mock_broker_set_down(mcluster, (int32_t)number));
      else
        reply_err(rd_kafka_mock_broker_set_up(mcluster, (int32_t)number));
    } else {
      printf("error unknown command %s (topic, down, up, quit)\n", command);
    }
    fflush(stdout);
  }

  rd_kafka_mock_cluster_destroy(mcluster);
  rd_kafka_destroy(rk);
  return 0;
}
