/*
 * A stand-in for the Mesos agent, for tests: it drives libflocker_isolator through its C header
 * exactly as the shim does (create with module parameters, prepare, cleanup, recover, a log
 * callback), one command per line on stdin, one answer per line on stdout:
 *
 *   prepare <container-id.json> <container-config.json>   ->  ok <launch info JSON | null>
 *   cleanup <container-id.json>                           ->  ok null
 *   recover <recover.json>                                ->  ok null
 *                                                         or  error <message>
 *
 * Usage: standin <parameters.json>. Log records go to stderr as "log <level> <target> <message>".
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flocker_isolator.h"

struct answer {
  pthread_mutex_t lock;
  pthread_cond_t ready;
  int done;
  int ok;
  char *text;
};

/* Runs on one of the isolator's threads: copy the result, wake the waiting thread. */
static void on_done(void *ctx, int ok, const char *json) {
  struct answer *answer = ctx;
  pthread_mutex_lock(&answer->lock);
  answer->ok = ok;
  answer->text = json ? strdup(json) : NULL;
  answer->done = 1;
  pthread_cond_signal(&answer->ready);
  pthread_mutex_unlock(&answer->lock);
}

static void on_log(void *ctx, int level, const char *target, const char *message) {
  (void)ctx;
  fprintf(stderr, "log %d %s %s\n", level, target, message);
}

static char *read_file(const char *path) {
  FILE *file = fopen(path, "rb");
  if (!file) return NULL;
  fseek(file, 0, SEEK_END);
  long size = ftell(file);
  rewind(file);
  char *text = malloc((size_t)size + 1);
  if (text && fread(text, 1, (size_t)size, file) == (size_t)size) {
    text[size] = '\0';
  } else {
    free(text);
    text = NULL;
  }
  fclose(file);
  return text;
}

/* Prints the answer of one call that was accepted, or why it was not. */
static void wait_and_print(flocker_result result, struct answer *answer) {
  if (result != FLOCKER_OK) {
    printf("error the call was refused (%d)\n", (int)result);
    return;
  }
  pthread_mutex_lock(&answer->lock);
  while (!answer->done) pthread_cond_wait(&answer->ready, &answer->lock);
  pthread_mutex_unlock(&answer->lock);
  if (answer->ok) {
    printf("ok %s\n", answer->text ? answer->text : "null");
  } else {
    for (char *c = answer->text; c && *c; c++) if (*c == '\n') *c = ' ';
    printf("error %s\n", answer->text ? answer->text : "(no message)");
  }
  free(answer->text);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <parameters.json>\n", argv[0]);
    return 2;
  }
  flocker_set_log_callback(on_log, NULL, 3);
  char *parameters = read_file(argv[1]);
  flocker_isolator *isolator = NULL;
  char *error = NULL;
  if (!parameters || flocker_isolator_new(parameters, &isolator, &error) != FLOCKER_OK) {
    printf("create-error %s\n", error ? error : "cannot read the parameters");
    fflush(stdout);
    flocker_string_free(error);
    free(parameters);
    return 1;
  }
  free(parameters);
  printf("ready %s\n", flocker_isolator_version());
  fflush(stdout);

  char line[8192];
  while (fgets(line, sizeof line, stdin)) {
    char command[32] = "", first[4096] = "", second[4096] = "";
    if (sscanf(line, "%31s %4095s %4095s", command, first, second) < 2) continue;
    struct answer answer = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL};
    char *a = read_file(first), *b = second[0] ? read_file(second) : NULL;
    flocker_result result;
    if (strcmp(command, "prepare") == 0) {
      result = flocker_isolator_prepare(isolator, a, b, on_done, &answer);
    } else if (strcmp(command, "cleanup") == 0) {
      result = flocker_isolator_cleanup(isolator, a, on_done, &answer);
    } else if (strcmp(command, "recover") == 0) {
      result = flocker_isolator_recover(isolator, a, on_done, &answer);
    } else {
      printf("error unknown command %s\n", command);
      fflush(stdout);
      free(a);
      free(b);
      continue;
    }
    wait_and_print(result, &answer);
    fflush(stdout);
    free(a);
    free(b);
  }
  flocker_isolator_free(isolator);
  return 0;
}
